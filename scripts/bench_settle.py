"""Settlement latency and throughput through the real worker (``make bench-settle``).

Two runs, each on a throwaway anvil with the ledger, twins, licenses and escrow of the gas
benchmark's ``setup``, a fresh SQLite store (WAL) holding its brands, usages accepted through the
real ``Ingestor`` (license checks by ``Web3LicenseView`` against the ledger) and settled by the real
``SettlementWorker`` (attester signs, relayer sends raw transactions, receipts priced and recorded):

- latency, anvil with 1 s blocks (``--block-time 1``): usages are accepted at a steady rate while
  the worker runs in a thread; each usage's time from accepted (its ``created_at`` in the store) to
  settled (the ``updated_at`` of the commit that marks it settled) gives p50/p90/p99;
- throughput, anvil with automine: rounds of usages accepted beforehand (their ``used_at`` spread
  as if they had arrived at the target rate), then the worker started; usages per second from the
  worker's start until the last one is settled in the store.

Writes ``build/bench/settle.json`` and prints a table. It is a measurement: it exits 0 whether or
not the DESIGN.md targets are met, and non-zero only when the benchmark itself could not run (a
usage refused at the door, not settled in time, or settled as anything but paid).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from eth_utils.crypto import keccak
from sqlalchemy import func, select

from bridge.chain.client import Web3ChainClient
from bridge.chain.views import Web3LicenseView
from bridge.domain.usage import UsageType
from bridge.intake.ingest import Ingestor, ItemStatus, UsageReport
from bridge.settings import Settings
from bridge.settlement.worker import SettlementWorker, WorkerConfig
from bridge.store import migrate
from bridge.store.models import SettlementBatch, UsageEvent, UsageStatus
from bridge.store.repository import BrandRecord, Store, create_brand
from bridge.testing.anvil import AnvilOptions, latest_timestamp, local_anvil, rpc
from bridge.testing.settling import worker_signers
from bridge.testing.world import SETUP_ADVANCE, World, setup
from scripts.bench_common import OUT_DIR, BenchError, machine, write_report

# A throwaway key made up for this benchmark: it pays gas on the local anvil started here only.
RELAYER_KEY: Final = "0x" + keccak(text="twin-bridge settle benchmark relayer").hex()
SEED: Final = 20_261_129

TARGET_P50_S: Final = 3.0
TARGET_USAGES_PER_S: Final = 2_000


@dataclass(frozen=True)
class Config:
    # latency run
    block_time: int = 1
    rate: float = 100.0
    """Usages accepted per second during the latency run."""
    feed_seconds: float = 30.0
    latency_batch_size: int = 500
    latency_max_age: float = 0.5
    # throughput run
    rounds: int = 3
    usages_per_round: int = 20_000
    throughput_batch_size: int = 5_000
    # both
    confirmations: int = 1
    poll_s: float = 0.05
    out_dir: Path = OUT_DIR


# ====================================================================== the bridge on a world


@dataclass
class Bridge:
    world: World
    url: str
    store: Store
    brands: list[BrandRecord]
    ingestor: Ingestor
    licensed_from: int
    sequence: int = 0

    def accept(self, brand: int, used_at: Sequence[float]) -> None:
        """Ingests usages of ``brand`` at these times; every one must be accepted."""
        world = self.world
        reports = []
        for at in used_at:
            self.sequence += 1
            twin = world.twin_ids[self.sequence % len(world.twin_ids)]
            prices = sorted(world.licenses[twin, brand].prices)
            reports.append(
                UsageReport(
                    event_id=f"settle-{brand}-{self.sequence}",
                    twin_id=twin,
                    usage_type=UsageType(prices[self.sequence % len(prices)]),
                    quantity=1 + self.sequence % 3,
                    used_at=datetime.fromtimestamp(int(at), UTC),
                )
            )
        with self.store.session() as session:
            results = self.ingestor.ingest(session, brand=self.brands[brand], reports=reports)
        refused = [r for r in results if r.status is not ItemStatus.ACCEPTED]
        if refused:
            raise BenchError(f"{len(refused)} usages not accepted: {refused[:3]}")

    def worker(self, *, batch_size: int, max_age: float, config: Config) -> SettlementWorker:
        client = Web3ChainClient([self.url], timeout=30)
        chain_id = client.chain_id()
        attester, relayer = worker_signers(self.world, chain_id=chain_id, relayer_key=RELAYER_KEY)
        return SettlementWorker(
            store=self.store,
            chain=client,
            attester=attester,
            relayer=relayer,
            config=WorkerConfig(
                ledger=self.world.ledger.address,
                batch_size=batch_size,
                max_age=timedelta(seconds=max_age),
                confirmations=config.confirmations,
                poll_s=config.poll_s,
            ),
        )

    def counts(self) -> dict[str, int]:
        with self.store.session() as session:
            rows = session.execute(
                select(UsageEvent.status, func.count()).group_by(UsageEvent.status)
            )
            return {str(status.value): int(n) for status, n in rows}

    def settled_times(self) -> list[tuple[datetime, datetime]]:
        """``(created_at, updated_at)`` of every settled usage."""
        with self.store.session() as session:
            rows = session.execute(
                select(UsageEvent.created_at, UsageEvent.updated_at).where(
                    UsageEvent.status == UsageStatus.SETTLED
                )
            )
            return [(c, u) for c, u in rows]

    def batches(self) -> list[tuple[int, int | None]]:
        """``(usages, gas used)`` of every batch."""
        with self.store.session() as session:
            rows = session.execute(
                select(func.count(UsageEvent.id), SettlementBatch.gas_used)
                .join(UsageEvent, UsageEvent.batch_id == SettlementBatch.id)
                .group_by(SettlementBatch.id)
            )
            return [(int(n), gas) for n, gas in rows]


@contextmanager
def bridge_on(block_time: float | None = None) -> Iterator[Bridge]:
    """A fresh anvil (a block per transaction, or every ``block_time`` s) with the set-up ledger,
    and a fresh store with its brands."""
    anvil = AnvilOptions(block_time=block_time)
    with local_anvil(anvil) as w3, tempfile.TemporaryDirectory(prefix="tb-settle-") as tmp:
        world = setup(w3)
        relayer = Account.from_key(RELAYER_KEY).address
        rpc(w3, "anvil_setBalance", relayer, hex(10**22))
        url = f"sqlite:///{Path(tmp, 'bridge.db').as_posix()}"
        migrate.upgrade(url)
        store = Store.from_url(url)
        try:
            with store.session() as session:
                brands = [
                    create_brand(
                        session, name=f"brand {i}", address=address, api_key_hash=f"{i:064}"
                    )
                    for i, address in enumerate(world.brands)
                ]
            rpc_url = str(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
            view = Web3LicenseView.connect(rpc_url, world.ledger.address, ttl=10)
            ingestor = Ingestor(settings=Settings(data_dir=Path(tmp)), licenses=view)
            yield Bridge(
                world=world,
                url=rpc_url,
                store=store,
                brands=brands,
                ingestor=ingestor,
                licensed_from=latest_timestamp(w3) - SETUP_ADVANCE + 1,
            )
        finally:
            store.close()


@contextmanager
def running(worker: SettlementWorker) -> Iterator[threading.Thread]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="settlement-worker", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=60)
    if errors:
        raise BenchError(f"the worker failed: {errors[0]!r}") from errors[0]


def _wait_settled(bridge: Bridge, total: int, timeout: float) -> float:
    """Waits until ``total`` usages are settled; the time it was seen (perf_counter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = bridge.counts()
        if counts.get("settled", 0) >= total:
            return time.perf_counter()
        unsettled = {
            k: v for k, v in counts.items() if k not in {"settled", "accepted", "submitted"}
        }
        if unsettled:
            raise BenchError(f"usages not settled as paid: {unsettled}")
        time.sleep(0.02)
    raise BenchError(f"not all {total} usages settled within {timeout:.0f} s: {bridge.counts()}")


# ====================================================================== the two runs


def _percentile(ordered: Sequence[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def latency_run(config: Config) -> dict[str, Any]:
    """Usages accepted at ``config.rate`` per second for ``config.feed_seconds`` while the worker
    runs on a chain with ``config.block_time`` s blocks."""
    with bridge_on(config.block_time) as bridge:
        worker = bridge.worker(
            batch_size=config.latency_batch_size, max_age=config.latency_max_age, config=config
        )
        tick = 0.1
        per_tick = max(1, round(config.rate * tick))
        accepted = 0
        with running(worker):
            start = time.perf_counter()
            next_tick = start
            while time.perf_counter() - start < config.feed_seconds:
                now = time.time()
                used = [max(bridge.licensed_from, now - 5)] * per_tick
                bridge.accept(accepted % len(bridge.brands), used)
                accepted += per_tick
                next_tick += tick
                time.sleep(max(0.0, next_tick - time.perf_counter()))
            fed = time.perf_counter() - start
            _wait_settled(bridge, accepted, timeout=120)
        times = bridge.settled_times()
        batches = bridge.batches()
        client = str(bridge.world.w3.client_version)
    latencies = sorted((u - c).total_seconds() for c, u in times)
    return {
        "accepted_to_settled_p50_s": round(_percentile(latencies, 50), 3),
        "accepted_to_settled_p90_s": round(_percentile(latencies, 90), 3),
        "accepted_to_settled_p99_s": round(_percentile(latencies, 99), 3),
        "accepted_to_settled_max_s": round(latencies[-1], 3),
        "accepted_to_settled_mean_s": round(statistics.fmean(latencies), 3),
        "usages": len(latencies),
        "accepted": accepted,
        "accepted_per_s": round(accepted / fed, 1),
        "feed_seconds": round(fed, 1),
        "batches": len(batches),
        "usages_per_batch_median": statistics.median(n for n, _ in batches),
        "chain": f"{client}, --block-time {config.block_time}",
        "worker": {
            "batch_size": config.latency_batch_size,
            "max_age_s": config.latency_max_age,
            "confirmations": config.confirmations,
            "poll_s": config.poll_s,
        },
    }


def throughput_run(config: Config) -> dict[str, Any]:
    """Rounds of ``config.usages_per_round`` accepted usages, each settled by a fresh worker start
    on an automining chain."""
    rounds: list[dict[str, Any]] = []
    with bridge_on() as bridge:
        brands = len(bridge.brands)
        used_from = float(bridge.licensed_from)
        settled_before = 0
        for i in range(config.rounds):
            # Spread as if the usages had arrived at the target rate: one second of use holds
            # TARGET_USAGES_PER_S usages (what makes the distinct prices the worker asks for).
            n = config.usages_per_round
            times = [used_from + k / TARGET_USAGES_PER_S for k in range(n)]
            used_from = times[-1] + 1
            if used_from > time.time() + 240:
                raise BenchError("usages would be dated too far ahead: use fewer per round")
            for b in range(brands):
                mine = times[b::brands]
                for start in range(0, len(mine), 1000):
                    bridge.accept(b, mine[start : start + 1000])
            worker = bridge.worker(
                batch_size=config.throughput_batch_size, max_age=0.0, config=config
            )
            with running(worker):
                started = time.perf_counter()
                done = _wait_settled(bridge, settled_before + n, timeout=600)
            settled_before += n
            seconds = done - started
            rounds.append({"usages": n, "seconds": round(seconds, 3), "usages_per_s": n / seconds})
            print(
                f"    round {i + 1}: {n:,} usages settled in {seconds:.2f} s = {n / seconds:,.0f}/s"
            )
        batches = bridge.batches()
        client = str(bridge.world.w3.client_version)
    gas = [g / n for n, g in batches if g]
    return {
        "usages_per_s": round(statistics.median(r["usages_per_s"] for r in rounds), 1),
        "rounds": [{**r, "usages_per_s": round(r["usages_per_s"], 1)} for r in rounds],
        "batches": len(batches),
        "usages_per_batch_median": statistics.median(n for n, _ in batches),
        "gas_per_usage_median": round(statistics.median(gas)) if gas else None,
        "chain": f"{client}, automine",
        "worker": {
            "batch_size": config.throughput_batch_size,
            "max_age_s": 0.0,
            "confirmations": config.confirmations,
            "poll_s": config.poll_s,
        },
        "used_at_spread": f"{TARGET_USAGES_PER_S:,} usages per second of use",
    }


# ====================================================================== run and report


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def run(config: Config) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"latency: anvil --block-time {config.block_time}, {config.rate:g} usages/s accepted")
    latency = latency_run(config)
    print(
        f"    p50 {latency['accepted_to_settled_p50_s']} s, p99 "
        f"{latency['accepted_to_settled_p99_s']} s over {latency['usages']:,} usages"
    )
    print("throughput: anvil automine")
    throughput = throughput_run(config)
    return {
        "accepted_to_settled_p50_s": latency["accepted_to_settled_p50_s"],
        "usages_per_s": throughput["usages_per_s"],
        "targets": {
            "accepted_to_settled_p50_s": TARGET_P50_S,
            "usages_per_s": TARGET_USAGES_PER_S,
        },
        "target_met": {
            "p50_le_3s_on_1s_blocks": latency["accepted_to_settled_p50_s"] <= TARGET_P50_S,
            "usages_per_s_ge_2000": throughput["usages_per_s"] >= TARGET_USAGES_PER_S,
        },
        "latency": latency,
        "throughput": throughput,
        "store": "sqlite (WAL)",
        "method": (
            "real Ingestor (Web3LicenseView checks) into a fresh SQLite store, real "
            "SettlementWorker in a thread of the same process, anvil on loopback on the same "
            "machine; latency per usage from its created_at to the updated_at of the commit "
            "marking it settled (both from the store); throughput from the worker's start to the "
            "moment the last usage of the round was seen settled in the store (polled every 20 "
            "ms), median over rounds. Every usage is checked to settle as paid."
        ),
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - started, 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(data: dict[str, Any]) -> None:
    met = data["target_met"]
    lat, thr = data["latency"], data["throughput"]
    print()
    print(f"{'metric':<44}  {'target':>8}  {'median':>9}  verdict")
    print(
        f"{'accepted → settled p50 s (1 s blocks)':<44}  {'≤ 3':>8}  "
        f"{data['accepted_to_settled_p50_s']:>9.2f}  {_verdict(met['p50_le_3s_on_1s_blocks'])}"
    )
    print(
        f"{'accepted → settled p99 s (1 s blocks)':<44}  {'':>8}  "
        f"{lat['accepted_to_settled_p99_s']:>9.2f}"
    )
    print(
        f"{'settled usages/s (automine)':<44}  {'≥ 2,000':>8}  "
        f"{data['usages_per_s']:>9,.0f}  {_verdict(met['usages_per_s_ge_2000'])}"
    )
    w = lat["worker"]
    print(
        f"\nlatency worker: batch {w['batch_size']}, max age {w['max_age_s']} s, "
        f"confirmations {w['confirmations']}, poll {w['poll_s']} s; throughput worker: batch "
        f"{thr['worker']['batch_size']}, max age 0 s; {data['machine']['cpus']} cores "
        f"({data['machine']['cpu']}), load average before {data['load_average_before']}, "
        f"after {data['load_average_after']}"
    )


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_settle", description=__doc__.split("\n\n")[0]
    )
    d = Config()
    parser.add_argument("--rate", type=float, default=d.rate, help="usages/s in the latency run")
    parser.add_argument("--feed-seconds", type=float, default=d.feed_seconds)
    parser.add_argument("--latency-batch-size", type=int, default=d.latency_batch_size)
    parser.add_argument("--latency-max-age", type=float, default=d.latency_max_age)
    parser.add_argument("--rounds", type=int, default=d.rounds)
    parser.add_argument("--usages-per-round", type=int, default=d.usages_per_round)
    parser.add_argument("--throughput-batch-size", type=int, default=d.throughput_batch_size)
    parser.add_argument("--confirmations", type=int, default=d.confirmations)
    parser.add_argument("--out-dir", type=Path, default=d.out_dir)
    args = parser.parse_args(argv)
    return Config(
        rate=args.rate,
        feed_seconds=args.feed_seconds,
        latency_batch_size=args.latency_batch_size,
        latency_max_age=args.latency_max_age,
        rounds=args.rounds,
        usages_per_round=args.usages_per_round,
        throughput_batch_size=args.throughput_batch_size,
        confirmations=args.confirmations,
        out_dir=args.out_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    return write_report("settle", lambda: run(config), print_table, config.out_dir)


if __name__ == "__main__":
    sys.exit(main())
