"""Gas per settled usage (``make bench-gas``).

Starts a throwaway anvil on a free loopback port with Prague rules, deploys the ledger with its
linked libraries, sets up 20 twins licensed to 3 brands with realistic terms, then settles signed
usage batches of 1, 10, 100 and 500 usages and, in the same run, usages settled one per
transaction. Reports the median ``gasUsed`` per usage from the receipts and writes
``build/bench/gas.json`` and a README table snippet ``build/bench/gas.md``.

It is a measurement: it exits 0 whether or not the DESIGN.md targets are met, and non-zero only when
the benchmark itself could not run (no anvil, a reverted transaction, a usage that was not paid).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import web3 as web3_package
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from bridge.chain.deploy import deploy_ledger
from bridge.chain.toolchain import load_artifact
from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage, decode_result

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
ANVIL: Final = REPO_ROOT / "node_modules" / ".bin" / "anvil"
OUT_DIR: Final = REPO_ROOT / "build" / "bench"

HARDFORK: Final = "prague"
BLOCK_GAS_LIMIT: Final = 1_000_000_000
ANVIL_ACCOUNTS: Final = 30
ANVIL_START_TIMEOUT: Final = 30.0

TWINS: Final = 20
BRANDS: Final = 3
PAYEE_ACCOUNTS: Final = 4
BATCH_RUNS: Final = {1: 9, 10: 9, 100: 9, 500: 5}
"""Batch size -> number of measured batches."""
SINGLE_TX_RUNS: Final = 50
SEED: Final = 20_270_412

TARGET_SIZE: Final = 100
TARGET_GAS_PER_USAGE: Final = 5_000
TARGET_RATIO: Final = 10.0

USD: Final = 10**6
"""One mock USD in token base units (6 decimals)."""
ESCROW_PER_BRAND: Final = 100_000_000 * USD
ADMIN_DELAY: Final = 2 * 24 * 3600
NOTICE_PERIOD: Final = 3 * 24 * 3600
LICENSE_DAYS: Final = 365
SETUP_ADVANCE: Final = 3600
"""Seconds between the license grants and the first settlement."""
USED_WITHIN: Final = 1800
"""Usages happened up to this many seconds before they are signed."""
USE_CAPS: Final = (100_000, 250_000, 1_000_000)
"""Caps of the capped licenses: far above anything this run uses."""

USAGE_TYPES: Final = {
    0: ("social post", 0.50, 5.00),
    1: ("display ad", 2.00, 25.00),
    2: ("video ad", 20.00, 120.00),
    3: ("broadcast or print", 50.00, 250.00),
}
"""Usage type -> (what it stands for, lowest and highest price per use in USD)."""

# A throwaway key made up for this benchmark: it only signs usage batches on the local anvil started
# here, and holds nothing anywhere. Transactions are sent from anvil's unlocked dev accounts.
ATTESTER_KEY: Final = keccak(text="twin-bridge gas benchmark attester")


# ====================================================================== anvil


class BenchError(RuntimeError):
    """The benchmark could not run."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: IO[bytes], lines: int = 20) -> str:
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops the anvil we started: its process group (node wrapper and the anvil binary)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_anvil(log: IO[bytes], extra: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], Web3]:
    if not os.access(ANVIL, os.X_OK):
        raise BenchError(f"{ANVIL} not found: run `make node_modules`")
    last_error = "no attempt"
    for _attempt in range(3):
        port = _free_port()
        command = [
            str(ANVIL),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--hardfork", HARDFORK,
            "--gas-limit", str(BLOCK_GAS_LIMIT),
            "--accounts", str(ANVIL_ACCOUNTS),
            *extra,
        ]  # fmt: skip
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 60}))
        deadline = time.monotonic() + ANVIL_START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if w3.is_connected():
                return proc, w3
            time.sleep(0.1)
        last_error = (
            f"anvil exited with {proc.returncode}" if proc.poll() is not None else "timeout"
        )
        _stop(proc)
    raise BenchError(f"anvil did not start ({last_error}):\n{_tail(log)}")


@contextmanager
def local_anvil(*extra: str) -> Iterator[Web3]:
    """A fresh anvil on 127.0.0.1 (``extra``: further anvil options, e.g. ``--block-time 1``),
    stopped when the block exits (also on error)."""
    with tempfile.TemporaryFile() as log:
        proc, w3 = _start_anvil(log, extra)
        try:
            yield w3
        finally:
            _stop(proc)


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    response = w3.provider.make_request(RPCEndpoint(method), params)
    if "error" in response:
        raise BenchError(f"{method} failed: {response['error']}")
    return response.get("result")


def _now(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def _advance(w3: Web3, seconds: int) -> None:
    _rpc(w3, "evm_increaseTime", [seconds])
    _rpc(w3, "evm_mine", [])


def _send(w3: Web3, calls: Sequence[tuple[ContractFunction, str]]) -> list[TxReceipt]:
    """Sends independent transactions from unlocked accounts, then waits for all of them."""
    hashes: list[HexBytes] = [call.transact({"from": sender}) for call, sender in calls]
    receipts = [
        w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.01) for h in hashes
    ]
    for receipt in receipts:
        if receipt["status"] != 1:
            raise BenchError(f"transaction {receipt['transactionHash'].hex()} reverted")
    return receipts


# ====================================================================== the ledger and its parties


@dataclass(frozen=True)
class LicensePlan:
    prices: dict[int, int]
    max_uses: int


@dataclass
class World:
    w3: Web3
    ledger: Contract
    token: Contract
    attester: LocalAccount
    relayer: ChecksumAddress
    brands: list[ChecksumAddress]
    twin_ids: list[int]
    licenses: dict[tuple[int, int], LicensePlan]
    """(twin id, brand index) -> terms."""
    payee_twins: int = 0
    rng: random.Random = field(default_factory=lambda: _rng())
    next_usage_id: int = 1


def _rng() -> random.Random:
    """The benchmark's reproducible workload generator (not used for anything secret)."""
    return random.Random(SEED)  # noqa: S311


def _price(rng: random.Random, usage_type: int) -> int:
    _, low, high = USAGE_TYPES[usage_type]
    return round(rng.uniform(low, high) * 100) * (USD // 100)


def setup(w3: Web3) -> World:
    """Deploys the ledger and gives it twins, licenses, payees and brand escrow."""
    rng = _rng()
    accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
    needed = 3 + BRANDS + TWINS + PAYEE_ACCOUNTS
    if len(accounts) < needed:
        raise BenchError(
            f"anvil has {len(accounts)} unlocked accounts, the benchmark needs {needed}"
        )
    admin, registrar, relayer = accounts[0], accounts[1], accounts[2]
    brands = accounts[3 : 3 + BRANDS]
    models = accounts[3 + BRANDS : 3 + BRANDS + TWINS]
    payees = accounts[3 + BRANDS + TWINS : needed]
    attester: LocalAccount = Account.from_key(ATTESTER_KEY)

    deployment = deploy_ledger(
        w3, sender=admin, admin=admin, admin_delay=ADMIN_DELAY, notice_period=NOTICE_PERIOD
    )
    ledger, token = deployment.ledger, deployment.token
    fn = ledger.functions
    _send(
        w3,
        [
            (fn.grantRole(fn.REGISTRAR_ROLE().call(), registrar), admin),
            (fn.grantRole(fn.ATTESTER_ROLE().call(), attester.address), admin),
        ],
    )

    receipts = _send(
        w3,
        [
            (
                fn.mint(model, f"ipfs://twin-bridge-bench/twin/{i}", keccak(text=f"consent {i}")),
                registrar,
            )
            for i, model in enumerate(models)
        ],
    )
    twin_ids = [
        int(event["args"]["twinId"])
        for receipt in receipts
        for event in ledger.events.TwinMinted().process_receipt(receipt, errors=DISCARD)
    ]
    if len(twin_ids) != TWINS:
        raise BenchError(f"minted {len(twin_ids)} twins, expected {TWINS}")
    owner_of = dict(zip(twin_ids, models, strict=True))

    pairs = [(twin, b) for twin in twin_ids for b in range(BRANDS)]
    capped = set(rng.sample(pairs, round(len(pairs) / 3)))
    valid_until = _now(w3) + LICENSE_DAYS * 24 * 3600
    licenses: dict[tuple[int, int], LicensePlan] = {}
    grants: list[tuple[ContractFunction, str]] = []
    for twin, b in pairs:
        types = sorted(rng.sample(sorted(USAGE_TYPES), rng.randint(1, 3)))
        plan = LicensePlan(
            prices={t: _price(rng, t) for t in types},
            max_uses=rng.choice(USE_CAPS) if (twin, b) in capped else 0,
        )
        licenses[twin, b] = plan
        terms = (
            brands[b],
            0,  # valid from the grant
            valid_until,
            plan.max_uses,
            keccak(text=f"campaign of brand {b} with twin {twin}"),
            keccak(text=f"consent document for twin {twin}, brand {b}"),
            list(plan.prices.items()),
        )
        grants.append((fn.grantLicense(twin, terms), owner_of[twin]))
    # Some twins split royalties with an agency and/or a manager.
    payee_twins = [twin for twin in twin_ids if rng.random() < 0.4]
    for twin in payee_twins:
        chosen = rng.sample(payees, rng.randint(1, 2))
        shares = [(account, bps) for account, bps in zip(chosen, (2_000, 1_000), strict=False)]
        grants.append((fn.setPayees(twin, shares), owner_of[twin]))
    _send(w3, grants)

    _send(
        w3,
        [(token.functions.mint(brand, ESCROW_PER_BRAND), brand) for brand in brands]
        + [(token.functions.approve(ledger.address, ESCROW_PER_BRAND), brand) for brand in brands],
    )
    _send(w3, [(fn.deposit(brand, ESCROW_PER_BRAND), brand) for brand in brands])
    _advance(w3, SETUP_ADVANCE)
    return World(
        w3=w3,
        ledger=ledger,
        token=token,
        attester=attester,
        relayer=relayer,
        brands=brands,
        twin_ids=twin_ids,
        licenses=licenses,
        payee_twins=len(payee_twins),
        rng=rng,
    )


# ====================================================================== batches


def _usage(world: World, twin: int, brand: int, now: int) -> tuple[int, Usage]:
    plan = world.licenses[twin, brand]
    usage = Usage(
        usage_id=world.next_usage_id,
        twin_id=twin,
        used_at=now - world.rng.randint(1, USED_WITHIN),
        quantity=world.rng.randint(1, 3),
        usage_type=world.rng.choice(sorted(plan.prices)),
    )
    world.next_usage_id += 1
    return brand, usage


def random_usages(world: World, count: int) -> list[tuple[int, Usage]]:
    """``count`` usages spread uniformly over the twins and brands, with sequential ids."""
    now = _now(world.w3)
    return [
        _usage(world, world.rng.choice(world.twin_ids), world.rng.randrange(BRANDS), now)
        for _ in range(count)
    ]


def warm_up_usages(world: World) -> list[tuple[int, Usage]]:
    """One usage of every (twin, brand) license, so no twin is still at its first-ever accrual."""
    now = _now(world.w3)
    return [_usage(world, twin, b, now) for b in range(BRANDS) for twin in world.twin_ids]


def group(world: World, usages: Sequence[tuple[int, Usage]]) -> list[tuple[str, list[int]]]:
    """One group per brand, sorted by twin id (then usage id), as the bridge worker batches."""
    groups: list[tuple[str, list[int]]] = []
    for b, brand in enumerate(world.brands):
        mine = sorted((u for ub, u in usages if ub == b), key=lambda u: (u.twin_id, u.usage_id))
        if mine:
            groups.append((brand, [u.encode() for u in mine]))
    return groups


def settle(world: World, usages: Sequence[tuple[int, Usage]]) -> int:
    """Signs and settles one batch; its receipt's gasUsed, after checking that every usage paid."""
    groups = group(world, usages)
    deadline = _now(world.w3) + 3600
    data = eip712.usage_batch(
        deadline, groups, chain_id=world.w3.eth.chain_id, ledger=world.ledger.address
    )
    signature = eip712.sign(world.attester, data)
    call = world.ledger.functions.settle((deadline, groups), signature)
    [receipt] = _send(world.w3, [(call, world.relayer)])
    results = [
        decode_result(word)
        for event in world.ledger.events.UsagesSettled().process_receipt(receipt, errors=DISCARD)
        for word in event["args"]["results"]
    ]
    unpaid = [(u.usage_id, outcome.name) for u, outcome in results if outcome != Outcome.PAID]
    if len(results) != len(usages) or unpaid:
        raise BenchError(f"batch of {len(usages)}: {len(results)} results, not paid: {unpaid[:5]}")
    return int(receipt["gasUsed"])


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


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "web3": web3_package.__version__,
    }


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
        "targets": {
            "batch_size": TARGET_SIZE,
            "max_gas_per_usage": TARGET_GAS_PER_USAGE,
            "min_ratio_vs_single_tx": TARGET_RATIO,
        },
        "ratio_vs_single_tx_at_target": ratio,
        "target_met": {
            "gas_per_usage_le_5000_at_100": at_target.gas_per_usage <= TARGET_GAS_PER_USAGE,
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
            "receipt gasUsed of ITwinLedger.settle sent by a relayer (includes the 21,000 "
            "intrinsic gas, calldata priced under Prague/EIP-7623, the attester's EIP-712 "
            "signature check and the UsagesSettled events). Usages: uniform over twins and "
            "brands, a random licensed usage type, quantity 1-3, used up to 30 min before "
            "signing, sequential usage ids; one UsageGroup per brand, sorted by twin id. Every "
            "usage is checked to be Paid. One warm-up batch (one usage per twin and brand) runs "
            "first and is not counted, so no measured batch pays a twin's first-ever accrual (a "
            "zero-to-non-zero store); a twin whose royalties were just paid out would pay that "
            "again once, which this steady state does not model. New words of the processed-usage "
            "bitmap (one per 256 usage ids) are counted where they fall. Per size: median over "
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
        "machine": _machine(),
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
        f"({_verdict(met['gas_per_usage_le_5000_at_100'])}), ≥ {TARGET_RATIO:.0f}x below one usage "
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
        f"{_verdict(met['gas_per_usage_le_5000_at_100'])} ({at['gas_per_usage_median']:,})"
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


def write_report(
    name: str,
    measure: Callable[[], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
    out_dir: Path = OUT_DIR,
    table: Callable[[dict[str, Any]], str] | None = None,
) -> int:
    """A benchmark's ``main``: measures, shows the result, writes ``<out_dir>/<name>.json`` (and
    ``<name>.md`` from ``table``); exit code 1 with the reason when it cannot run."""
    try:
        data = measure()
    except BenchError as exc:
        print(f"bench-{name}: {exc}", file=sys.stderr)
        return 1
    show(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.json"]
    written[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if table is not None:
        written.append(out_dir / f"{name}.md")
        written[1].write_text(table(data), encoding="utf-8")
    print(f"\nwrote {' and '.join(map(str, written))} ({data['wall_seconds']} s)")
    return 0


def main() -> int:
    return write_report("gas", run, print_table, table=markdown)


if __name__ == "__main__":
    sys.exit(main())
