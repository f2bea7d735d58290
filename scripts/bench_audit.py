"""Audit rebuild speed (``make bench-audit``).

Starts a throwaway anvil (Prague, 1 billion gas per block), deploys the ledger with the gas
benchmark's world (20 twins licensed to 3 brands, payees, escrow), settles at least 100,000
usages in signed batches sent straight to the ledger, then times ``bridge.audit.run.run_audit``
over the whole history: scan with adaptive ``eth_getLogs`` ranges, rebuild of every twin, license,
usage, escrow and royalty, verification of every batch (transaction input, EIP-712 digest,
signer, role, usages) and the balance checks against the ledger's views. Several runs; the median
counts. A baseline in the same run: only the raw ``eth_getLogs`` requests over the same ranges,
answered and parsed, nothing rebuilt.

Writes ``build/bench/audit.json`` and a README table ``build/bench/audit.md``. A measurement: it
exits 0 whether or not the 10,000 usages/s target is met, non-zero only when the benchmark could
not run or the audit found a discrepancy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import requests

from bridge.audit.run import run_audit
from bridge.audit.scan import DEFAULT_MAX_BLOCK_RANGE
from bridge.chain.rpc import JsonRpc
from bridge.testing.anvil import HARDFORK, local_anvil
from bridge.testing.world import random_usages, settle, setup, warm_up_usages
from scripts.bench_common import BenchError, machine, write_report

USAGES: Final = 100_000
BATCH_SIZE: Final = 500
"""The worker's default batch size (TWIN_BRIDGE_BATCH_SIZE)."""
RUNS: Final = 5
TARGET_USAGES_PER_S: Final = 10_000


def _raw_logs_seconds(url: str, ledger: str, last: int, block_range: int) -> tuple[float, int]:
    """Seconds to fetch and parse every log of the ledger with plain eth_getLogs; their count."""
    session = requests.Session()
    started = time.perf_counter()
    count = 0
    for first in range(0, last + 1, block_range):
        params = {
            "address": ledger,
            "fromBlock": hex(first),
            "toBlock": hex(min(last, first + block_range - 1)),
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [params]}
        response = session.post(
            url, data=orjson.dumps(body), timeout=120, headers={"Content-Type": "application/json"}
        )
        count += len(orjson.loads(response.content)["result"])
    session.close()
    return time.perf_counter() - started, count


def run(usages: int, batch_size: int, runs: int) -> dict[str, Any]:
    started = time.monotonic()
    with local_anvil() as w3:
        url = w3.provider.endpoint_uri  # type: ignore[attr-defined]
        client = str(w3.client_version)
        print(f"{client} on {url}, hardfork {HARDFORK}")
        world = setup(w3)
        warm_up = warm_up_usages(world)
        settle(world, warm_up)
        settled = len(warm_up)
        settle_started = time.monotonic()
        while settled < usages:
            settle(world, random_usages(world, batch_size))
            settled += batch_size
            if settled % 10_000 < batch_size:
                print(f"  settled {settled:,} usages", flush=True)
        settle_seconds = time.monotonic() - settle_started
        last = int(w3.eth.block_number)
        ledger = world.ledger.address

        samples: list[dict[str, float]] = []
        result = None
        for n in range(runs):
            rpc = JsonRpc(url)
            t0 = time.perf_counter()
            result = run_audit(rpc, ledger=ledger, start_block=0, to_block=last)
            total = time.perf_counter() - t0
            rpc.close()
            if not result.clean:
                raise BenchError(f"the audit found discrepancies: {result.discrepancies[:3]}")
            samples.append(
                {
                    "seconds": total,
                    "scan_seconds": result.stats.seconds,
                    "rpc_requests": result.stats.rpc_requests,
                }
            )
            print(f"  audit run {n + 1}: {total:.3f} s ({len(result.state.usages):,} usages)")
        if result is None:
            raise BenchError("no audit ran")
        baseline = [
            _raw_logs_seconds(url, ledger, last, DEFAULT_MAX_BLOCK_RANGE) for _ in range(runs)
        ]
        summary = result.summary()

    audited = summary["usages"]
    median = statistics.median(s["seconds"] for s in samples)
    raw = statistics.median(seconds for seconds, _ in baseline)
    return {
        "usages": audited,
        "usages_per_s": round(audited / median),
        "audit_seconds_median": round(median, 3),
        "audit_seconds": [round(s["seconds"], 3) for s in samples],
        "scan_and_rebuild_seconds_median": round(
            statistics.median(s["scan_seconds"] for s in samples), 3
        ),
        "balance_check_seconds_median": round(
            statistics.median(s["seconds"] - s["scan_seconds"] for s in samples), 3
        ),
        "rpc_requests": samples[0]["rpc_requests"],
        "baseline_raw_get_logs_seconds_median": round(raw, 3),
        "baseline_raw_get_logs_usages_per_s": round(audited / raw),
        "logs": baseline[0][1],
        "batches": summary["batches"],
        "batches_verified": summary["batches_verified"],
        "batch_size": batch_size,
        "blocks": last + 1,
        "twins": summary["twins"],
        "licenses": summary["licenses"],
        "balance_checks": summary["balance_checks"],
        "runs": runs,
        "target_usages_per_s": TARGET_USAGES_PER_S,
        "target_met": audited / median >= TARGET_USAGES_PER_S,
        "settle_seconds": round(settle_seconds, 1),
        "method": (
            "run_audit over the whole history (blocks 0 to the last settlement), from a new "
            "JSON-RPC connection and an empty state each run: eth_getLogs in ranges of up to "
            f"{DEFAULT_MAX_BLOCK_RANGE:,} blocks, every event applied, every usage's outcome "
            "decided again and priced, every settlement transaction fetched (batched) and "
            "verified (settle() input, EIP-712 digest, signer recovered, ATTESTER_ROLE from the "
            "role events, usages against the results), then the balance checks (eth_call batch "
            "at the last block and the token balance). usages_per_s = usages / median audit "
            "seconds. Baseline: the same eth_getLogs requests answered and parsed, nothing else."
        ),
        "hardfork": HARDFORK,
        "chain": {"client": client},
        "machine": machine(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def markdown(data: dict[str, Any]) -> str:
    return (
        "| usages | batches verified | audit (median of "
        f"{data['runs']}) | usages/s | raw eth_getLogs only | target ≥ 10,000/s |\n"
        "|---:|---:|---:|---:|---:|---|\n"
        f"| {data['usages']:,} | {data['batches_verified']:,} "
        f"| {data['audit_seconds_median']:.2f} s | {data['usages_per_s']:,} "
        f"| {data['baseline_raw_get_logs_seconds_median']:.2f} s "
        f"| {'MET' if data['target_met'] else 'MISSED'} |\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--usages", type=int, default=USAGES)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    return write_report(
        "audit",
        lambda: run(args.usages, args.batch_size, args.runs),
        lambda data: print("\n" + markdown(data)),
        table=markdown,
    )


if __name__ == "__main__":
    sys.exit(main())
